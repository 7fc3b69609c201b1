# pragma version ~=0.4.1
"""
@title RootAnchor
@license Apache-2.0
@notice Anchors the Merkle roots of BRIGHT community ledgers (B-DLT): one root per settlement
        interval per community, never overwritten. The first account that anchors a community's
        root becomes its only submitter, so nobody else can pre-empt an interval with another root.
@dev community = keccak256 of the community identifier (UTF-8); interval = start of the settlement
     interval in Unix seconds; tree_size = number of records under the root.
"""

event RootAnchored:
    community: indexed(bytes32)
    interval: indexed(uint256)
    tree_size: uint256
    root: bytes32
    submitter: address

# community -> interval start (Unix s) -> Merkle root (RFC 9162, SHA-256)
roots: public(HashMap[bytes32, HashMap[uint256, bytes32]])
# community -> interval start (Unix s) -> number of records under the root
sizes: public(HashMap[bytes32, HashMap[uint256, uint256]])
# community -> the account allowed to anchor its roots (set by the first anchor)
submitters: public(HashMap[bytes32, address])


@external
def anchor(community: bytes32, interval: uint256, tree_size: uint256, root: bytes32):
    """
    @notice Store the root of one interval of a community's log and emit RootAnchored.
    @param community keccak256 of the community identifier
    @param interval start of the settlement interval, Unix seconds
    @param tree_size number of records under the root
    @param root RFC 9162 Merkle root (SHA-256) signed in the interval's tree head
    """
    assert root != empty(bytes32), "empty root"
    assert tree_size > 0, "empty log"
    owner: address = self.submitters[community]
    if owner == empty(address):
        self.submitters[community] = msg.sender
    else:
        assert owner == msg.sender, "community anchored by another account"
    assert self.roots[community][interval] == empty(bytes32), "interval already anchored"
    self.roots[community][interval] = root
    self.sizes[community][interval] = tree_size
    log RootAnchored(community=community, interval=interval, tree_size=tree_size, root=root, submitter=msg.sender)
