"""A model's life on an agent: accepted or refused, signed, stored, run in shadow, promoted, rolled back."""
