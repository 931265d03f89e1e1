"""python -m paddle_qwenvl.cli  ==  paddle-qwenvl"""
import sys

from . import main

sys.exit(main())
