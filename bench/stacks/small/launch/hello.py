"""Benchmark app: imports a package from each layer and calls into the shared library."""

import alpha
import delta
import extuser


def main() -> None:
    print("hello", alpha.__version__, delta.__version__, extuser.answer())


if __name__ == "__main__":
    main()
