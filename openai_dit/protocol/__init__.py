"""Wire formats of each API as msgspec Structs. No torch here."""
