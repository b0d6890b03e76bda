"""Operations context: health, the synthetic canary, admin authentication (later: DLQ explorer,
kill switches, circuit breakers)."""
