"""Prints where each imported package came from: the app layer or the framework below it."""

import sys

import attrs
import idna


def main() -> None:
    print(f"hello from Python {sys.version.split()[0]}")
    print(f"attrs {attrs.__version__} from {attrs.__file__}")
    print(f"idna {idna.__version__} from {idna.__file__}")


if __name__ == "__main__":
    main()
