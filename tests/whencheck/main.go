// Command whencheck decides Argo Workflows `when` conditions the way the workflow controller
// does, with the real govaluate library, so that tests can run the templates' conditions.
//
// It reads a JSON list of already substituted conditions on stdin and writes a JSON list of
// {"run": true|false, "error": "..."}.
//
// What it mirrors (argo-workflows v4, the steps/DAG ShouldExecute): an empty condition runs;
// otherwise govaluate.NewEvaluableExpression parses it, every VARIABLE token is turned into
// a STRING token (so `staging == canary` compares two words without quotes), the tokens are
// parsed again and evaluated with no parameters, and the result must be a bool.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/Knetic/govaluate"
)

type answer struct {
	Run   bool   `json:"run"`
	Error string `json:"error,omitempty"`
}

func decide(when string) (bool, error) {
	if when == "" {
		return true, nil
	}
	expression, err := govaluate.NewEvaluableExpression(when)
	if err != nil {
		return false, fmt.Errorf("invalid 'when' expression '%s': %v", when, err)
	}
	tokens := expression.Tokens()
	for i, tok := range tokens {
		if tok.Kind == govaluate.VARIABLE {
			tok.Kind = govaluate.STRING
			tokens[i] = tok
		}
	}
	expression, err = govaluate.NewEvaluableExpressionFromTokens(tokens)
	if err != nil {
		return false, fmt.Errorf("failed to parse 'when' expression '%s': %v", when, err)
	}
	result, err := expression.Evaluate(nil)
	if err != nil {
		return false, fmt.Errorf("failed to evaluate 'when' expression '%s': %v", when, err)
	}
	run, ok := result.(bool)
	if !ok {
		return false, fmt.Errorf("expected 'when' expression '%s' to evaluate to a bool, got %v", when, result)
	}
	return run, nil
}

func main() {
	var conditions []string
	if err := json.NewDecoder(os.Stdin).Decode(&conditions); err != nil {
		fmt.Fprintln(os.Stderr, "whencheck: reading stdin:", err)
		os.Exit(2)
	}
	answers := make([]answer, len(conditions))
	for i, when := range conditions {
		run, err := decide(when)
		answers[i].Run = run
		if err != nil {
			answers[i].Error = err.Error()
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(answers); err != nil {
		fmt.Fprintln(os.Stderr, "whencheck: writing stdout:", err)
		os.Exit(2)
	}
}
