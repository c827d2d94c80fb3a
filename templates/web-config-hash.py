"""The bcrypt hash for an exporter-toolkit web config's basic_auth_users, run on the target host by
the monitoring, node_exporter and postgres_exporter roles (python3 -c, python3-bcrypt).

The password comes on stdin, the web config's path is argv[1]. It prints the hash already in that
file when it still matches the password, else a new one with a random salt: the file is rewritten
only when the password changed, so converges stay idempotent. It prints nothing but the hash.
argv[2] == "check" (check mode): without python3-bcrypt yet, it prints a placeholder.
"""

import re
import sys

try:
    import bcrypt
except ImportError:
    if sys.argv[2:] == ["check"]:
        print("check-mode-placeholder")
        sys.exit(0)
    raise

password = sys.stdin.buffer.read()
try:
    with open(sys.argv[1], encoding="utf-8") as config:
        text = config.read()
except FileNotFoundError:
    text = ""
for existing in re.findall(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", text):
    if bcrypt.checkpw(password, existing.encode()):
        print(existing)
        break
else:
    print(bcrypt.hashpw(password, bcrypt.gensalt(rounds=10)).decode())
