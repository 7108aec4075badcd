"""`chatdistill simulate`: drive the running system with simulated customers and an operator,
shift the traffic, and measure whether the loop notices and recovers by itself.

scenario.py  which intents the customers ask about before and after the shift (a real data set)
traffic.py   the HTTP side: one customer turn, the rating rule, the operator's labels, timeline
summary.py   pure: rolling accuracy, the summary JSON (time to detect, to recover, before/after)
plot.py      the PNG (accuracy and latency over time, thresholds, runs and promotions marked)
stack.py     start (or attach to) chat_api + Celery worker + beat as subprocesses
run.py       the simulation loop; cli.py the click command

The rating rule (stated once, here): a simulated customer gives thumbs up when the reply's
intent is the intent their message really had (the data set's label), thumbs down otherwise
(a handoff included). The simulated operator labels `label_share` of replies with the true
intent through the operator API, which is how new intents reach the next training snapshot.
"""
