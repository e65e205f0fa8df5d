# Boards tests (tests/tests/it/boards.rs) start a throwaway sshd on 127.0.0.1:HIGHPORT with their
# own keys and sshd_config, inside a private mount namespace (tmpfs on /run), so they never touch
# the machine's own sshd. They need the server binary, ssh-keygen and unshare (util-linux).
# shellcheck shell=bash
apt_need openssh-server openssh-client util-linux
