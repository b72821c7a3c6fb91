"""Benchmark app: fit a tiny classifier (numpy and scipy come from the framework layer)."""

import numpy as np
from sklearn.linear_model import LogisticRegression


def main() -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    print("prediction", LogisticRegression().fit(X, y).predict([[2.5]])[0])


if __name__ == "__main__":
    main()
