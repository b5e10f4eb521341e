package jsonenc

// Valid reports whether data is one JSON value, as encoding/json.Valid
// does: the same answer for every input (FuzzValid), nesting limited to
// the same depth, invalid UTF-8 in strings accepted as it accepts it. It
// runs several times faster than encoding/json's scanner, which calls a
// state function per byte: the bus envelopes are checked whole before
// their fast decoders read them, and message bodies are checked at the
// gateway and the service.
func Valid(data []byte) bool {
	var buf [32]bool
	stack := buf[:0] // open containers, innermost last: true for an object
	n := len(data)
	i := 0
value:
	i = skipSpace(data, i)
	if i >= n {
		return false
	}
	switch data[i] {
	case '{':
		if len(stack) >= maxDepth {
			return false
		}
		stack = append(stack, true)
		i = skipSpace(data, i+1)
		if i < n && data[i] == '}' {
			i++
			stack = stack[:len(stack)-1]
			goto next
		}
		goto key
	case '[':
		if len(stack) >= maxDepth {
			return false
		}
		stack = append(stack, false)
		i = skipSpace(data, i+1)
		if i < n && data[i] == ']' {
			i++
			stack = stack[:len(stack)-1]
			goto next
		}
		goto value
	case '"':
		i = stringEnd(data, i)
	case 't':
		i = literalEnd(data, i, "true")
	case 'f':
		i = literalEnd(data, i, "false")
	case 'n':
		i = literalEnd(data, i, "null")
	default:
		i = numberEnd(data, i)
	}
	if i < 0 {
		return false
	}
next:
	i = skipSpace(data, i)
	if len(stack) == 0 {
		return i == n
	}
	if i >= n {
		return false
	}
	if stack[len(stack)-1] {
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
			goto key
		case '}':
			i++
			stack = stack[:len(stack)-1]
			goto next
		}
		return false
	}
	switch data[i] {
	case ',':
		i++
		goto value
	case ']':
		i++
		stack = stack[:len(stack)-1]
		goto next
	}
	return false
key:
	if i >= n || data[i] != '"' {
		return false
	}
	if i = stringEnd(data, i); i < 0 {
		return false
	}
	i = skipSpace(data, i)
	if i >= n || data[i] != ':' {
		return false
	}
	i++
	goto value
}

// maxDepth is encoding/json's limit on nesting.
const maxDepth = 10000

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// inString marks the bytes a string cannot hold as they are: the quote,
// the backslash and the control characters.
var inString = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// stringEnd returns the index after the valid string starting at data[i]
// ('"'), or -1.
func stringEnd(data []byte, i int) int {
	n := len(data)
	for j := i + 1; ; {
		for j < n && !inString[data[j]] {
			j++
		}
		if j >= n {
			return -1
		}
		switch data[j] {
		case '"':
			return j + 1
		case '\\':
			if j+1 >= n {
				return -1
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > n {
					return -1
				}
				for _, c := range data[j+2 : j+6] {
					if !isHex(c) {
						return -1
					}
				}
				j += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// literalEnd returns the index after lit at data[i], or -1.
func literalEnd(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// numberEnd returns the index after the number starting at data[i]
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), or -1.
func numberEnd(data []byte, i int) int {
	n := len(data)
	if data[i] == '-' {
		i++
	}
	switch {
	case i < n && data[i] == '0':
		i++
	case i < n && '1' <= data[i] && data[i] <= '9':
		for i++; i < n && isDigit(data[i]); i++ {
		}
	default:
		return -1
	}
	if i < n && data[i] == '.' {
		i++
		if i >= n || !isDigit(data[i]) {
			return -1
		}
		for i++; i < n && isDigit(data[i]); i++ {
		}
	}
	if i < n && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= n || !isDigit(data[i]) {
			return -1
		}
		for i++; i < n && isDigit(data[i]); i++ {
		}
	}
	return i
}
