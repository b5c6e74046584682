"""The caller's mistakes as data: ubus status codes and ApiError.

The block store and the names part refuse bad decisions with an
ApiError(status, message); the transports (ubus, JSON-RPC, the CLI) turn
it into their own answer. It lives down here, beside `addr`, so that the
parts that raise it never import the interface that catches it.
"""

OK = 0
INVALID_COMMAND = 1
INVALID_ARGUMENT = 2
METHOD_NOT_FOUND = 3
NOT_FOUND = 4
NO_DATA = 5
PERMISSION_DENIED = 6
UNKNOWN_ERROR = 9

STATUS_NAMES = {
    0: "OK", 1: "INVALID_COMMAND", 2: "INVALID_ARGUMENT", 3: "METHOD_NOT_FOUND",
    4: "NOT_FOUND", 5: "NO_DATA", 6: "PERMISSION_DENIED", 9: "UNKNOWN_ERROR",
}


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message
