"""Column functions and UDF factories: pure transformations, no reads or writes."""
