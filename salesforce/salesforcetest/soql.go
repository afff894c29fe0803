package salesforcetest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The fake's SOQL subset:
//
//	SELECT field, ... FROM object [WHERE cond] [ORDER BY field [ASC|DESC], ...] [LIMIT n]
//	cond := term {OR term};  term := factor {AND factor};  factor := [NOT] (cond) | field op value | field [NOT] IN (value, ...)
//	op := = != <> < <= > >=;  value := 'string' | number | datetime | date | true | false | null

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDateTime
	tDate
	tOp
	tLParen
	tRParen
	tComma
)

type tok struct {
	kind tokKind
	text string // identifier, operator or raw literal
	str  string // decoded string literal
	t    time.Time
	num  float64
}

var (
	dateTimeRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})`)
	dateRe     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)
	numberRe   = regexp.MustCompile(`^-?\d+(\.\d+)?`)
)

func lex(s string) ([]tok, error) {
	var out []tok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, tok{kind: tLParen, text: "("})
			i++
		case c == ')':
			out = append(out, tok{kind: tRParen, text: ")"})
			i++
		case c == ',':
			out = append(out, tok{kind: tComma, text: ","})
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == '\\' {
					if j+1 >= len(s) {
						return nil, fmt.Errorf("unterminated escape at %d", j)
					}
					switch s[j+1] {
					case 'n':
						b.WriteByte('\n')
					case 'r':
						b.WriteByte('\r')
					case 't':
						b.WriteByte('\t')
					case 'b':
						b.WriteByte('\b')
					case 'f':
						b.WriteByte('\f')
					case '"', '\'', '\\':
						b.WriteByte(s[j+1])
					default:
						return nil, fmt.Errorf("invalid escape \\%c at %d", s[j+1], j)
					}
					j += 2
					continue
				}
				if s[j] == '\'' {
					closed = true
					j++
					break
				}
				if s[j] == '\n' || s[j] == '\r' {
					return nil, fmt.Errorf("line break in string literal at %d", j)
				}
				b.WriteByte(s[j])
				j++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated string literal at %d", i)
			}
			out = append(out, tok{kind: tString, text: s[i:j], str: b.String()})
			i = j
		case strings.ContainsRune("=!<>", rune(c)):
			op := string(c)
			if i+1 < len(s) && (s[i+1] == '=' || (c == '<' && s[i+1] == '>')) {
				op = s[i : i+2]
			}
			if op == "!" {
				return nil, fmt.Errorf("unexpected ! at %d", i)
			}
			out = append(out, tok{kind: tOp, text: op})
			i += len(op)
		case c >= '0' && c <= '9' || c == '-':
			rest := s[i:]
			if m := dateTimeRe.FindString(rest); m != "" {
				t, err := parseSOQLDateTime(m)
				if err != nil {
					return nil, err
				}
				out = append(out, tok{kind: tDateTime, text: m, t: t})
				i += len(m)
			} else if m := dateRe.FindString(rest); m != "" {
				t, err := time.Parse("2006-01-02", m)
				if err != nil {
					return nil, err
				}
				out = append(out, tok{kind: tDate, text: m, t: t})
				i += len(m)
			} else if m := numberRe.FindString(rest); m != "" {
				f, err := strconv.ParseFloat(m, 64)
				if err != nil {
					return nil, err
				}
				out = append(out, tok{kind: tNumber, text: m, num: f})
				i += len(m)
			} else {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '.' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			out = append(out, tok{kind: tIdent, text: s[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	return append(out, tok{kind: tEOF}), nil
}

func parseSOQLDateTime(s string) (time.Time, error) {
	if len(s) > 5 && (s[len(s)-5] == '+' || s[len(s)-5] == '-') {
		s = s[:len(s)-2] + ":" + s[len(s)-2:] // +0000 → +00:00
	}
	return time.Parse(time.RFC3339Nano, s)
}

// expr is a WHERE condition.
type expr interface{}

type andExpr struct{ l, r expr }
type orExpr struct{ l, r expr }
type notExpr struct{ e expr }
type cmpExpr struct {
	field string
	op    string // = != < <= > >= in notin
	vals  []tok
}

type orderTerm struct {
	field string
	desc  bool
}

type soqlQuery struct {
	fields []string
	// subs are the child subqueries of the select list.
	subs    []subQuery
	object  string
	where   expr
	orderBy []orderTerm
	limit   int // -1: none
}

// subQuery is a child relationship subquery in a select list:
// (SELECT fields FROM relationship).
type subQuery struct {
	fields []string
	rel    string
}

type parser struct {
	toks []tok
	pos  int
}

func (p *parser) peek() tok { return p.toks[p.pos] }
func (p *parser) next() tok {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}
func (p *parser) keyword(k string) bool {
	t := p.peek()
	if t.kind == tIdent && strings.EqualFold(t.text, k) {
		p.pos++
		return true
	}
	return false
}
func (p *parser) ident() (string, error) {
	t := p.next()
	if t.kind != tIdent || isKeyword(t.text) {
		return "", fmt.Errorf("expected a name, got %q", t.text)
	}
	return t.text, nil
}

func isKeyword(s string) bool {
	switch strings.ToUpper(s) {
	case "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "LIMIT", "ASC", "DESC", "NULL", "TRUE", "FALSE":
		return true
	}
	return false
}

// parseSOQL parses the fake's SOQL subset.
func parseSOQL(s string) (*soqlQuery, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	q := &soqlQuery{limit: -1}
	if !p.keyword("SELECT") {
		return nil, fmt.Errorf("expected SELECT")
	}
	for {
		if p.peek().kind == tLParen {
			p.next()
			sub, err := p.subquery()
			if err != nil {
				return nil, err
			}
			q.subs = append(q.subs, sub)
		} else {
			f, err := p.ident()
			if err != nil {
				return nil, err
			}
			q.fields = append(q.fields, f)
		}
		if p.peek().kind != tComma {
			break
		}
		p.next()
	}
	if !p.keyword("FROM") {
		return nil, fmt.Errorf("expected FROM")
	}
	if q.object, err = p.ident(); err != nil {
		return nil, err
	}
	if p.keyword("WHERE") {
		if q.where, err = p.cond(); err != nil {
			return nil, err
		}
	}
	if p.keyword("ORDER") {
		if !p.keyword("BY") {
			return nil, fmt.Errorf("expected BY")
		}
		for {
			f, err := p.ident()
			if err != nil {
				return nil, err
			}
			ot := orderTerm{field: f}
			if p.keyword("DESC") {
				ot.desc = true
			} else {
				p.keyword("ASC")
			}
			q.orderBy = append(q.orderBy, ot)
			if p.peek().kind != tComma {
				break
			}
			p.next()
		}
	}
	if p.keyword("LIMIT") {
		t := p.next()
		n, err := strconv.Atoi(t.text)
		if t.kind != tNumber || err != nil || n < 0 {
			return nil, fmt.Errorf("bad LIMIT %q", t.text)
		}
		q.limit = n
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("unexpected token: %q", t.text)
	}
	return q, nil
}

// subquery parses "SELECT f, ... FROM rel)" after the opening parenthesis.
func (p *parser) subquery() (subQuery, error) {
	var sub subQuery
	if !p.keyword("SELECT") {
		return sub, fmt.Errorf("expected SELECT in a subquery")
	}
	for {
		f, err := p.ident()
		if err != nil {
			return sub, err
		}
		sub.fields = append(sub.fields, f)
		if p.peek().kind != tComma {
			break
		}
		p.next()
	}
	if !p.keyword("FROM") {
		return sub, fmt.Errorf("expected FROM in a subquery")
	}
	rel, err := p.ident()
	if err != nil {
		return sub, err
	}
	sub.rel = rel
	if p.next().kind != tRParen {
		return sub, fmt.Errorf("expected ) after a subquery")
	}
	return sub, nil
}

func (p *parser) cond() (expr, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for p.keyword("OR") {
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		l = orExpr{l, r}
	}
	return l, nil
}

func (p *parser) term() (expr, error) {
	l, err := p.factor()
	if err != nil {
		return nil, err
	}
	for p.keyword("AND") {
		r, err := p.factor()
		if err != nil {
			return nil, err
		}
		l = andExpr{l, r}
	}
	return l, nil
}

func (p *parser) factor() (expr, error) {
	if p.keyword("NOT") {
		e, err := p.factor()
		return notExpr{e}, err
	}
	if p.peek().kind == tLParen {
		p.next()
		e, err := p.cond()
		if err != nil {
			return nil, err
		}
		if p.next().kind != tRParen {
			return nil, fmt.Errorf("expected )")
		}
		return e, nil
	}
	f, err := p.ident()
	if err != nil {
		return nil, err
	}
	c := cmpExpr{field: f}
	switch {
	case p.keyword("NOT"):
		if !p.keyword("IN") {
			return nil, fmt.Errorf("expected IN after NOT")
		}
		c.op = "notin"
	case p.keyword("IN"):
		c.op = "in"
	default:
		t := p.next()
		if t.kind != tOp {
			return nil, fmt.Errorf("expected an operator after %s, got %q", f, t.text)
		}
		c.op = t.text
		if c.op == "<>" {
			c.op = "!="
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.vals = []tok{v}
		return c, nil
	}
	if p.next().kind != tLParen {
		return nil, fmt.Errorf("expected ( after IN")
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.vals = append(c.vals, v)
		t := p.next()
		if t.kind == tRParen {
			break
		}
		if t.kind != tComma {
			return nil, fmt.Errorf("expected , or ) in IN list")
		}
	}
	return c, nil
}

func (p *parser) value() (tok, error) {
	t := p.next()
	switch t.kind {
	case tString, tNumber, tDateTime, tDate:
		return t, nil
	case tIdent:
		switch strings.ToLower(t.text) {
		case "true", "false", "null":
			t.text = strings.ToLower(t.text)
			return t, nil
		}
	}
	return tok{}, fmt.Errorf("expected a value, got %q", t.text)
}

// fieldsIn lists the fields a condition names.
func fieldsIn(e expr, out []string) []string {
	switch x := e.(type) {
	case andExpr:
		return fieldsIn(x.r, fieldsIn(x.l, out))
	case orExpr:
		return fieldsIn(x.r, fieldsIn(x.l, out))
	case notExpr:
		return fieldsIn(x.e, out)
	case cmpExpr:
		return append(out, x.field)
	}
	return out
}
