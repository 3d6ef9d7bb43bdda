package templates

import (
	"errors"
	"fmt"
	"text/template/parse"
)

// checkTree refuses template constructs that could make one render cost without bound: other
// templates (define, block, template, which can recurse exponentially) and range over anything
// but a field of the data (a number literal or a function result such as len could loop a
// billion times with no data at all). n is the number of templates the parse produced.
func checkTree(part string, tree *parse.Tree, n int) error {
	if n > 1 {
		return &PartError{Part: part, Err: errors.New("{{define}} and {{block}} are not supported; write one template per part")}
	}
	if tree == nil || tree.Root == nil {
		return nil
	}
	return walk(part, tree, tree.Root)
}

func walk(part string, tree *parse.Tree, n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := walk(part, tree, c); err != nil {
				return err
			}
		}
	case *parse.TemplateNode:
		return nodeError(part, tree, n, "{{template}} is not supported; write one template per part")
	case *parse.RangeNode:
		if !walksData(n.Pipe) {
			return nodeError(part, tree, n, "{{range}} must walk a field of the data, such as {{range .items}} or {{range $.items}}")
		}
		return walkBranch(part, tree, &n.BranchNode)
	case *parse.IfNode:
		return walkBranch(part, tree, &n.BranchNode)
	case *parse.WithNode:
		return walkBranch(part, tree, &n.BranchNode)
	}
	return nil
}

func walkBranch(part string, tree *parse.Tree, b *parse.BranchNode) error {
	if err := walk(part, tree, b.List); err != nil {
		return err
	}
	if b.ElseList != nil {
		return walk(part, tree, b.ElseList)
	}
	return nil
}

// walksData reports whether a range pipeline is a single field reference: .items, .a.b,
// $.items or $x.items. Fields of JSON data are lists, objects, strings, numbers as json.Number
// or booleans, never Go integers, so such a range is bounded by the data.
func walksData(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		return true
	case *parse.VariableNode:
		return len(a.Ident) >= 2
	}
	return false
}

func nodeError(part string, tree *parse.Tree, n parse.Node, msg string) error {
	loc, _ := tree.ErrorContext(n)
	return &PartError{Part: part, Err: fmt.Errorf("%s: %s", loc, msg)}
}
