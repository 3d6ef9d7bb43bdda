package mailer_test

import "fmt"

func fmtPort(format string, port int) string { return fmt.Sprintf(format, port) }
