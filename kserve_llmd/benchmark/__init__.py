"""The benchmark harness: workloads, a streaming OpenAI client, load generation, statistics and reports.

See ``README.md`` in this folder for what lives where and what every metric means.
"""
