"""Registry: accounts, unit classes, serial blocks, issuance, transfer, holds, surrender, cancellation."""
