"""The question box (智能助手, issue #12): a Chinese question about the district read
deterministically and offline (``timewords.py``, ``vocabulary.py``, ``parse.py``: jieba
with the user's place names and ``configs/assistant.yaml``) and answered from
:mod:`cloud.analysis` (``answer.py``), scoped by the user."""
