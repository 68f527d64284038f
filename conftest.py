"""pytest, for the whole checkout: the Hugging Face adapter's doctests need the ``hf`` extra
(``pip install -e ".[test,hf]"``, as CI does); with ``.[test]`` alone, as the README installs,
its module is not collected (its tests under ``tests/`` skip themselves)."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("transformers") else ["src/umt/yours/hf.py"]
