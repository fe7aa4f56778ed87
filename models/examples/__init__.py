"""Small built-in models the project makes itself (no download, no copied weights).

- ``digits``: the default model of ``serve deploy``, an MLP the project trains on
  scikit-learn's bundled 8x8 digits; its held-back accuracy is printed when made.
- ``mlp``: an MLP 784-512-512-10 with seeded random weights, the benchmarks'
  "large" model.
"""
