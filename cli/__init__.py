"""mreg's command line: a thin click shell over ``registry``."""
