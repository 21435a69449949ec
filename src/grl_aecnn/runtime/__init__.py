"""Split-inference runtime on one machine: edge-server and device processes that exchange real
bitstreams over real sockets, and a testbed that drives them slot by slot from the MEC simulator
(docs/runtime.md). Nothing else in the package imports this one."""
