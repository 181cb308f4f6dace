"""What both client scripts share: a check that stops at the first failure, and the closing
line tests/serve.rs looks for."""

_passed = 0


def check(cond, what):
    global _passed
    if not cond:
        raise AssertionError(what)
    _passed += 1
    print(f"ok: {what}", flush=True)


def done():
    print(f"{_passed} checks passed", flush=True)
