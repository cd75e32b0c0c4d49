"""Helpers several strategies share, in one place each: entropy (`uncertainty`), the MC-dropout
machinery (`mc_dropout`), k-means / k-means++ / nearest members and k-center greedy (`clustering`).
A strategy module holds only what is its own."""
