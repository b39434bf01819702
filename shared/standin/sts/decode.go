package sts

import "io"

// DecodeTrust reads and validates a trust table from r (a table built into
// a program rather than a file).
func DecodeTrust(r io.Reader) (Trust, error) { return decodeTrust(r) }
