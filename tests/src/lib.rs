//! Fixtures shared by the integration tests: temporary dirs, the `shiftnas` binary, sshd boards.
