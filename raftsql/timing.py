"""The default Raft timing, shared by the node, the CLI and the local cluster.

Its own tiny module so that the client side (cluster, shell, CLI) can know the defaults
without importing the server. 25 ms ticks, heartbeats every 2 ticks (50 ms), election
timeouts drawn from [14, 28] ticks = [350, 700] ms in 25 ms steps: a leader killed under
load is replaced, and writes flow again, well within a second (benchmarks/failover.py),
while a follower still tolerates hundreds of milliseconds of silence (a slow fsync or a
starved CPU on the leader) before it even asks for a pre-vote.
"""

TICK_SECONDS = 0.025
ELECTION_TICKS = 14
HEARTBEAT_TICKS = 2
