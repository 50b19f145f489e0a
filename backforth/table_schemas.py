"""The schemas of the tables in backforth.catalog (each a function: pyspark is imported only when one is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType


def _struct(*fields: tuple[str, Any] | tuple[str, Any, bool]) -> StructType:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f[0], f[1], f[2] if len(f) > 2 else True) for f in fields])


def _t() -> Any:  # the type module, imported when a schema is built (the catalog itself needs no Spark)
    from pyspark.sql import types as T

    return T


def _generation() -> list[tuple[str, DataType]]:
    """The columns every LLM step's rows carry (see backforth.llm)."""
    T = _t()
    s = T.StringType()
    return [
        ("raw_output", s), ("error", s), ("prompt_tokens", T.IntegerType()), ("output_tokens", T.IntegerType()),
        ("finish_reason", s),
        ("model", _struct(("profile", s), ("backend", s), ("uri", s), ("version", s))),
        ("prompt", _struct(("name", s), ("version", s), ("uri", s))),
        ("sampling", _struct(("temperature", T.DoubleType()), ("top_p", T.DoubleType()),
                             ("max_tokens", T.IntegerType()), ("seed", T.LongType()))),
        ("created_at", T.TimestampType()), ("engine_s", T.DoubleType()), ("batch_id", s),
    ]  # fmt: skip


def _instructions() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(("doc_id", s), ("step_version", s), ("instruction", s), ("reject_reason", s), *_generation())


def _scores() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(
        ("doc_id", s), ("pair_kind", s), ("step_version", s), ("instruction_version", s), ("instruction", s),
        ("mode", s), ("score", T.IntegerType()), ("expected_score", T.DoubleType()), ("digit_mass", T.DoubleType()),
        ("valid", T.BooleanType()), ("invalid_reason", s), *_generation(),
    )  # fmt: skip


def _pairs_filtered() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(
        ("doc_id", s), ("step_version", s), ("instruction", s), ("instruction_version", s), ("score", T.IntegerType()),
        ("expected_score", T.DoubleType()), ("score_version", s), ("filter_mode", s), ("filter_value", T.DoubleType()),
        ("created_at", T.TimestampType()), ("drop_reason", s),
    )  # fmt: skip


def _responses() -> StructType:
    s = _t().StringType()
    return _struct(
        ("doc_id", s), ("step_version", s), ("kind", s), ("source_version", s), ("instruction", s), ("response", s),
        ("status", s), *_generation(),
    )  # fmt: skip


def _sft_pairs() -> StructType:
    T = _t()
    s = T.StringType()
    message = _struct(("role", s), ("content", s))
    return _struct(
        ("pair_id", s), ("messages", T.ArrayType(message)), ("instruction", s), ("response", s), ("kind", s),
        ("split", s), ("doc_id", s), ("url", s), ("source", s), ("score", T.IntegerType()),
        ("step_versions", _struct(("backtranslate", s), ("input", s), ("response", s))), ("model", s),
        ("step_version", s), ("exported_at", T.TimestampType()), ("tag", s), ("contamination",
        _struct(("benchmark", s), ("field", s), ("ngram", s))), ("drop_reason", s), ("rank", T.IntegerType()),
        ("subsets", T.ArrayType(T.IntegerType())),
        ("review", _struct(("review_id", s), ("label", s), ("reviewer", s))),
    )  # fmt: skip


def _eval_verdicts() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(
        ("item_id", s), ("step_version", s), ("instruction", s), ("candidate_set", s), ("candidate_export", s),
        ("baseline_set", s), ("baseline_export", s), ("candidate_answer", s), ("baseline_answer", s),
        ("judge_ab", s), ("judge_ba", s), ("verdict_ab", s), ("verdict_ba", s), ("score", T.DoubleType()),
        ("outcome", s), ("judge", s), ("evaluated_at", T.TimestampType()),
    )  # fmt: skip


def _docs_raw() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(
        ("doc_id", s), ("source", s), ("source_format", s), ("source_id", s), ("url", s), ("text", s), ("created", s),
        ("metadata", s), ("file", s), ("position", T.LongType()), ("ingest_batch", s),
        ("ingested_at", T.TimestampType()),
    )  # fmt: skip


def _docs_dedup() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(
        ("doc_id", s), ("cluster_id", s), ("is_kept", T.BooleanType()), ("dup_reason", s),
        ("exact_hash", T.LongType()), ("dedup_version", s), ("deduped_at", T.TimestampType()),
    )  # fmt: skip


def _dedup_signatures() -> StructType:
    T = _t()
    return _struct(
        ("doc_id", T.StringType()), ("exact_hash", T.LongType()), ("signature", T.ArrayType(T.IntegerType())),
        ("bands", T.ArrayType(T.LongType())), ("n_shingles", T.IntegerType()),
    )  # fmt: skip


def _docs_clean() -> StructType:
    T = _t()
    s, d, i = T.StringType(), T.DoubleType(), T.IntegerType()
    shares = ["symbol_char_share", "hash_ellipsis_ratio", "ellipsis_line_share", "bullet_line_share",
              "short_line_share", "nav_line_share", "link_line_share", "boilerplate_line_share", "dup_line_share",
              "dup_paragraph_share", "binary_char_share", "markup_char_share"]  # fmt: skip
    stats = _struct(
        ("n_chars", T.IntegerType()), ("n_words", T.IntegerType()), ("n_lines", T.IntegerType()),
        ("mean_word_length", d), *[(n, d) for n in shares], ("has_lorem_ipsum", T.BooleanType()),
        ("top_2gram_share", d), ("top_3gram_share", d), ("top_4gram_share", d), ("dup_5gram_share", d),
        ("pii_email", i), ("pii_phone", i), ("pii_ip_address", i), ("pii_credit_card", i), ("pii_api_key", i),
    )  # fmt: skip
    return _struct(
        ("doc_id", s), ("text", s), ("text_original", s), ("lang", s), ("lang_score", d),
        ("n_words", T.IntegerType()), ("n_tokens", T.IntegerType()), ("token_method", s), ("stats", stats),
        ("failed_rules", T.ArrayType(s)), ("drop_reason", s), ("clean_version", s), ("cleaned_at", T.TimestampType()),
    )  # fmt: skip


def _ingest_rejects() -> StructType:
    T = _t()
    s = T.StringType()
    return _struct(
        ("file", s), ("position", T.LongType()), ("reason", s), ("detail", s), ("raw", s), ("source_format", s),
        ("ingest_batch", s), ("ingested_at", T.TimestampType()),
    )  # fmt: skip


def _reviews() -> StructType:
    from backforth.reviews import spark_schema

    return spark_schema()


def _step_runs() -> StructType:
    from backforth.lineage import schema

    return schema()
