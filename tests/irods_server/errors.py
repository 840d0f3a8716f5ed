"""iRODS error codes the test server returns (all known to python-irodsclient 3.3's exception table)."""

from __future__ import annotations


class E:
    SYS_UNMATCHED_API_NUM = -12000
    SYS_NO_API_PRIV = -13000
    SYS_API_INPUT_ERR = -14000
    SYS_INVALID_FILE_PATH = -31000
    SYS_INVALID_OPR_TYPE = -35000
    SYS_PATH_IS_NOT_A_FILE = -52000
    SYS_NOT_SUPPORTED = -66000
    SYS_RESC_DOES_NOT_EXIST = -78000
    SYS_INVALID_INPUT_PARAM = -130000
    SYS_REPLICA_DOES_NOT_EXIST = -164000
    USER_FILE_DOES_NOT_EXIST = -310000
    OVERWRITE_WITHOUT_FORCE_FLAG = -312000
    USER_CHKSUM_MISMATCH = -314000
    USER_INPUT_PATH_ERR = -317000
    SAME_SRC_DEST_PATHS_ERR = -339000
    OBJ_PATH_DOES_NOT_EXIST = -358000
    USER_INCOMPATIBLE_PARAMS = -402000
    CHECK_VERIFICATION_RESULTS = -407000
    UNIX_FILE_OPEN_ERR = -510000
    UNIX_FILE_CREATE_ERR = -511000
    UNIX_FILE_STAT_ERR = -516000
    CAT_SQL_ERR = -806000
    CAT_NO_ROWS_FOUND = -808000
    UNMATCHED_KEY_OR_INDEX = -313000
    CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME = -809000
    CAT_UNKNOWN_COLLECTION = -814000
    CAT_INVALID_ARGUMENT = -816000
    CAT_UNKNOWN_FILE = -817000
    CAT_NO_ACCESS_PERMISSION = -818000
    CAT_SUCCESS_BUT_WITH_NO_INFO = -819000
    CAT_COLLECTION_NOT_EMPTY = -821000
    CAT_INVALID_AUTHENTICATION = -826000
    CAT_INVALID_USER = -827000
    CAT_NAME_EXISTS_AS_COLLECTION = -833000
    CAT_NAME_EXISTS_AS_DATAOBJ = -834000
    HIERARCHY_ERROR = -1803000


class IrodsError(Exception):
    """Raised by request handlers; becomes a reply with a negative intInfo and an RError_PI message."""

    def __init__(self, code: int, msg: str = "") -> None:
        super().__init__(msg or str(code))
        self.code = code
        self.msg = msg


class DropConnection(Exception):
    """Raised by a request handler: the connection is closed without a reply (a real agent would die)."""
