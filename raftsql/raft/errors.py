"""Errors the core raises to its caller (never to peers: peers only see messages)."""


class RaftError(Exception):
    """Base class of everything the Raft core raises."""


class NotLeader(RaftError):
    """Only the leader accepts proposals; ``leader_id`` says whom to ask (None if unknown)."""

    def __init__(self, leader_id: int | None) -> None:
        super().__init__(f"not the leader (leader is {leader_id})")
        self.leader_id = leader_id


class ProposalDropped(RaftError):
    """The leader refused a proposal for now (transfer in progress, too much uncommitted
    data): backpressure, so the caller can retry later instead of queueing without bound."""
