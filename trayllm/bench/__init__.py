"""Load generator and reports for `trayllm bench`."""
