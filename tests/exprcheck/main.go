// Command exprcheck renders Argo Workflows template strings the way the workflow controller
// does, with the real expr engine, so that tests can evaluate every `{{= ... }}` tag offline.
//
// It reads a JSON list of {"text": "...", "env": {"inputs.parameters.gpu": "true", ...}} on
// stdin and writes a JSON list of {"value": "...", "expressions": [...], "error": "..."}.
//
// What it mirrors (argo-workflows v4, util/template):
//   - replace.go Replace: templating runs on the JSON encoding of the template, so the text
//     is json.Marshal'ed first and the result json.Unmarshal'ed at the end;
//   - template.go (impl).replace: fasttemplate splits on "{{" and the first "}}" after it;
//     a tag that starts with "=" is an expression, any other tag a simple variable;
//   - kind.go parseTag: the expression is jsonutil.Fix'ed (\u003c \u003e \u0026 back to < > &);
//   - expression_template.go expressionReplaceCore: the expression is JSON-unmarshalled
//     (undoing the escapes of the first step), compiled with expr.Compile(expr.Env(env)),
//     run with expr.Run, and its result json.Marshal'ed and written without its quotes;
//   - util/expr/env GetFuncMap: the env is the flat map expanded at the dots into nested
//     maps (util/expand Expand, bellows), plus asInt, asFloat, string, jsonpath and toJson;
//   - simple_template.go simpleReplaceStrict: a simple tag is looked up after TrimSpace and
//     its value strconv.Quote'd.
//
// It is strict where Argo may leave a tag unresolved for a later pass: a name missing from
// env (expressionReplaceStrict's getIdentifiers and hasVarInEnv) is an error here. Differences: expr 1.8.9 (Debian) instead of expr-lang/expr 1.17, so
// newer built-in functions are unknown names here; `sprig` and `jsonpath` are not provided
// (their libraries are not packaged), so an expression that calls them fails with a message.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/antonmedv/expr"
	"github.com/antonmedv/expr/ast"
	"github.com/antonmedv/expr/parser"
)

type request struct {
	Text string            `json:"text"`
	Env  map[string]string `json:"env"`
}

type evaluated struct {
	Expression string `json:"expression"`
	Result     string `json:"result"`
}

type response struct {
	Value       string      `json:"value"`
	Expressions []evaluated `json:"expressions"`
	Error       string      `json:"error,omitempty"`
}

// expand turns {"a.b": 1} into {"a": {"b": 1}}, dropping a key that another key extends.
func expand(flat map[string]string) map[string]interface{} {
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]interface{}{}
	for i, k := range keys {
		if i+1 < len(keys) && strings.HasPrefix(keys[i+1]+".", k) {
			continue // removeConflicts: the less specific key goes
		}
		parts := strings.Split(k, ".")
		node := out
		for _, part := range parts[:len(parts)-1] {
			child, ok := node[part].(map[string]interface{})
			if !ok {
				child = map[string]interface{}{}
				node[part] = child
			}
			node = child
		}
		node[parts[len(parts)-1]] = flat[k]
	}
	return out
}

func asInt(in interface{}) int64 {
	switch v := in.(type) {
	case string:
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			panic(err)
		}
		return i
	case int:
		return int64(v)
	case int64:
		return v
	case float64:
		return int64(v)
	}
	panic(fmt.Sprintf("asInt: cannot convert %T", in))
}

func asFloat(in interface{}) float64 {
	switch v := in.(type) {
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			panic(err)
		}
		return f
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case float64:
		return v
	}
	panic(fmt.Sprintf("asFloat: cannot convert %T", in))
}

func toJSON(v interface{}) string {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(out)
}

func unpackaged(name string) func(...interface{}) interface{} {
	return func(...interface{}) interface{} {
		panic(name + " is not available in tests/exprcheck (its library is not packaged)")
	}
}

// environment is what GetFuncMap gives expr: nested parameters and Argo's functions.
func environment(flat map[string]string) map[string]interface{} {
	env := expand(flat)
	env["asInt"] = asInt
	env["asFloat"] = asFloat
	env["string"] = func(v interface{}) interface{} { return fmt.Sprintf("%v", v) }
	env["toJson"] = toJSON
	env["jsonpath"] = unpackaged("jsonpath")
	return env // no "sprig": an expression that uses it fails ("sprig is missing")
}

// identifiers collects the names and member paths (a.b, a['b']) an expression reads,
// as getIdentifiers in expression_template.go does.
type identifiers struct {
	seen  map[string]bool
	names []string
}

func (v *identifiers) Enter(*ast.Node) {}

func (v *identifiers) Exit(node *ast.Node) {
	switch (*node).(type) {
	case *ast.IdentifierNode, *ast.PropertyNode, *ast.IndexNode:
		if path, ok := memberPath(*node); ok && !v.seen[path] {
			v.seen[path] = true
			v.names = append(v.names, path)
		}
	}
}

func memberPath(node ast.Node) (string, bool) {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		return n.Value, true
	case *ast.PropertyNode:
		path, ok := memberPath(n.Node)
		return path + "." + n.Property, ok
	case *ast.IndexNode:
		index, isString := n.Index.(*ast.StringNode)
		if !isString {
			return "", false
		}
		path, ok := memberPath(n.Node)
		return path + "." + index.Value, ok
	}
	return "", false
}

// hasVar tells whether a dotted name is in env, through its nested maps (hasVarInEnv).
func hasVar(env map[string]interface{}, name string) bool {
	var current interface{} = env
	for _, part := range strings.Split(name, ".") {
		m, ok := current.(map[string]interface{})
		if !ok {
			return false
		}
		if current, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

// expression evaluates one `{{=...}}` tag body (JSON-encoded, as Argo sees it).
func expression(tag string, flat map[string]string) (string, string, error) {
	tag = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(tag)
	var source string
	if err := json.Unmarshal([]byte(`"`+tag+`"`), &source); err != nil {
		return "", tag, fmt.Errorf("failed to unmarshall JSON expression: %w", err)
	}
	env := environment(flat)
	// expressionReplaceStrict: every name the expression reads must be in env; Argo leaves
	// the tag unresolved for a later pass, or fails in its strict pass. Here it fails.
	if tree, err := parser.Parse(source); err == nil {
		found := &identifiers{seen: map[string]bool{}}
		ast.Walk(&tree.Node, found)
		for _, name := range found.names {
			if !hasVar(env, name) {
				return "", source, fmt.Errorf("failed to evaluate expression: %s is missing", name)
			}
		}
	}
	program, err := expr.Compile(source, expr.Env(env))
	if err != nil {
		return "", source, fmt.Errorf("failed to evaluate expression: %w", err)
	}
	result, err := expr.Run(program, env)
	if err != nil {
		return "", source, fmt.Errorf("failed to evaluate expression: %w", err)
	}
	if result == nil {
		return "", source, fmt.Errorf("failed to evaluate expression %q", source)
	}
	marshaled, err := json.Marshal(result)
	if err != nil {
		return "", source, fmt.Errorf("failed to marshal evaluated expression: %w", err)
	}
	n := len(marshaled)
	if n > 1 && marshaled[0] == '"' && marshaled[n-1] == '"' {
		return string(marshaled[1 : n-1]), source, nil
	}
	quoted := strconv.Quote(string(marshaled))
	return quoted[1 : len(quoted)-1], source, nil
}

// render replaces every tag of text, as Argo's Replace does on a template's JSON.
func render(req request) response {
	resp := response{Expressions: []evaluated{}}
	encoded, _ := json.Marshal(req.Text)
	s := string(encoded[1 : len(encoded)-1])
	var out strings.Builder
	for {
		start := strings.Index(s, "{{")
		if start < 0 {
			out.WriteString(s)
			break
		}
		out.WriteString(s[:start])
		s = s[start+2:]
		end := strings.Index(s, "}}")
		if end < 0 {
			resp.Error = fmt.Sprintf("cannot find end tag=%q starting from %q", "}}", s)
			return resp
		}
		tag := s[:end]
		s = s[end+2:]
		if strings.HasPrefix(tag, "=") {
			value, source, err := expression(tag[1:], req.Env)
			if err != nil {
				resp.Error = err.Error()
				return resp
			}
			var result string // the value itself, not its JSON escape
			_ = json.Unmarshal([]byte(`"`+value+`"`), &result)
			resp.Expressions = append(resp.Expressions, evaluated{source, result})
			out.WriteString(value)
			continue
		}
		value, ok := req.Env[strings.TrimSpace(tag)]
		if !ok {
			resp.Error = fmt.Sprintf("failed to resolve {{%s}}", tag)
			return resp
		}
		quoted := strconv.Quote(value)
		out.WriteString(quoted[1 : len(quoted)-1])
	}
	if err := json.Unmarshal([]byte(`"`+out.String()+`"`), &resp.Value); err != nil {
		resp.Error = "the result was invalid JSON: " + err.Error()
	}
	return resp
}

func main() {
	var requests []request
	if err := json.NewDecoder(os.Stdin).Decode(&requests); err != nil {
		fmt.Fprintln(os.Stderr, "exprcheck: stdin must be a JSON list of {text, env}:", err)
		os.Exit(2)
	}
	responses := make([]response, len(requests))
	for i, req := range requests {
		responses[i] = render(req)
	}
	if err := json.NewEncoder(os.Stdout).Encode(responses); err != nil {
		fmt.Fprintln(os.Stderr, "exprcheck:", err)
		os.Exit(1)
	}
}
