"""Launch module of app-one: reports where each package was imported from."""

import json
import sys


def main() -> None:
    import alpha
    import beta
    import delta
    import extuser
    import gamma
    import libshared
    import onehelp
    import zeta

    found = {m.__name__: m.__file__ for m in (alpha, beta, delta, gamma, libshared, zeta, extuser)}
    found["onehelp"] = onehelp.__file__
    json.dump(
        {"files": found, "answer": extuser.answer(), "greeting": onehelp.GREETING}, sys.stdout
    )


if __name__ == "__main__":
    main()
