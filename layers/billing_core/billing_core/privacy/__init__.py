"""Personal data and card numbers: what we refuse, redact or encrypt before anything is stored."""
