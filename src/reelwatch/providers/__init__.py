"""Provider adapters turn each API's answers into the same provider-neutral observations."""
