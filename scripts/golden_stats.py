"""Reference values for crates/study/src/stats.rs's tests, at 30 significant digits (mpmath,
which ships with PyTorch: `pip install mpmath`). Prints Rust tuples to paste into the tests.

P(|T| >= t) for Student's t with df degrees of freedom is I_{df/(df+t^2)}(df/2, 1/2).
"""
import mpmath as mp

mp.mp.dps = 30
print("// (t, df, P(|T| >= t))")
for t, df in [(0.5, 10), (1.0, 1000), (0.1, 3), (1.5, 2), (1.2, 7), (3.0, 50), (10.0, 1), (6.0, 30)]:
    x = mp.mpf(df) / (df + mp.mpf(t) ** 2)
    p = mp.betainc(mp.mpf(df) / 2, mp.mpf(1) / 2, 0, x, regularized=True)
    print(f"({float(t)}, {float(df)}, {mp.nstr(p, 15)}),")
print("// (x, ln Gamma(x))")
for x in [0.25, 0.5, 1.5, 3.0, 10.5, 100.5]:
    print(f"({x}, {float(mp.loggamma(x))!r}),")  # the nearest f64, shortest form
