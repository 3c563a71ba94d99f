"""The member's encrypted SQLCipher store (issue 3). Knows no network."""
