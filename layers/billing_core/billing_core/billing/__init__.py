"""Our billing cycle (billing mode INTERNAL): periods, the billing run, charge attempts."""
