"""Training neural ODEs under each solver and gradient mode (cases of ``kind = train``).

- :mod:`training.tasks`: what to fit (the spiral of torchdiffeq's ``ode_demo``, Lotka-Volterra);
- :mod:`training.loop`: one training case, its per-iteration records and its summary row;
- :mod:`training.digits`: the Neural ODE paper's Table 1 in miniature (MLP, ResNet, RK-Net,
  ODE-Net on scikit-learn's 8x8 digits).
"""
