"""Error and payload mapping, one module per trigger type (API Gateway, SQS, Step Functions).
Handlers never match on exceptions themselves: they hand the trigger's mapping the domain call."""
