"""`mic-pipeline bench`: the pipeline and its peers measured in one run, on one broker, over one backlog.

A roof package: it imports `schemas`, `producers`, `streams`, `sinks` and `mic_pipeline.infra`;
nothing there may import it. Modules:

- `cli`: the subcommand and its options; `run`: the order of the stages and the result document;
- `backlog`: the simulator backlog and its ground truth, and the enriched backlog the sinks read;
- `procs`: child processes (peak RSS from `/proc/<pid>/status` VmHWM, stopped and waited for even
  on failure); `kafka`: topics per stage, publishing, committed offsets;
- `peer` (+ `peer_aiokafka`, `peer_faust`, `peer_quix`): the peers, each in its own process;
- `stages`: the worker and sink stages; `pipeline`: end to end and latency at offered rates;
- `machine`: machine facts and versions; `report`: ratios, the JSON and the Markdown table;
  `targets`: the throughput issue's targets judged against a run, as written and converted.
"""
