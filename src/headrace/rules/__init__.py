"""The rule engine: rules select records of the outbound stream and send them to a sink.

- ``model.py``: the rule document (``select``, ``transform``, ``sink``), its checks;
- ``engine.py``: ``RuleEngine``, the rules' CRUD, pause/resume/replay, one stream
  consumer (``rule:{ruleId}``) per rule, the cursors, dead letters and counters the
  delivery process reports;
- ``process.py``, ``channel.py``, ``worker.py``: the rules' delivery process (the hub's
  end, the framing, the process itself), where the runners work with their own GIL;
- ``runner.py``: one rule's loop (read, transform, format, deliver, commit the cursor),
  its counters;
- ``transform.py``: ``transform(record)`` in the parsing-script sandbox;
- ``formats.py``: the EnOS envelope and topics (docs/protocols.md D.2), EnOS per-point
  records, headrace's record;
- ``kafka.py`` and ``webhook.py``: the sinks;
- ``deadletters.py``: each rule's dead-letter list.

See docs/rules.md.
"""
