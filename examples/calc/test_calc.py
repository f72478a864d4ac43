import unittest

from calc import add, divide, multiply, subtract


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)

    def test_subtract(self) -> None:
        self.assertEqual(subtract(2, 3), -1)

    def test_multiply(self) -> None:
        self.assertEqual(multiply(4, 2.5), 10)

    def test_divide(self) -> None:
        self.assertEqual(divide(7, 2), 3.5)

    def test_divide_by_zero(self) -> None:
        with self.assertRaises(ZeroDivisionError):
            divide(1, 0)


if __name__ == "__main__":
    unittest.main()
