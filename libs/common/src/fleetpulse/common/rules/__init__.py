"""The pure rule core: rule evaluation (:mod:`.domain`), condition rules and schedules
(:mod:`.conditions`) and the backtest over stored readings (:mod:`.backtest`).

No I/O and no settings: the evaluator runs it on live readings, the API's ``/rules/preview``
replays stored telemetry through the same code, so the two cannot disagree. It lives in
``libs/common`` because services never import each other.
"""
