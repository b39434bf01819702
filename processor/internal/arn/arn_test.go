package arn

import (
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

func TestParseRoleARN(t *testing.T) {
	valid := []struct {
		in   string
		want Role
	}{
		{"arn:aws:iam::123456789012:role/cloud-meter",
			Role{Raw: "arn:aws:iam::123456789012:role/cloud-meter", Partition: "aws", AccountID: "123456789012", Path: "/", Name: "cloud-meter"}},
		{"  arn:aws:iam::012345678901:role/leading-zero\n",
			Role{Raw: "arn:aws:iam::012345678901:role/leading-zero", Partition: "aws", AccountID: "012345678901", Path: "/", Name: "leading-zero"}},
		{"\tarn:aws-us-gov:iam::000000000001:role/a/b/Gov_Role+=,.@-1 ",
			Role{Raw: "arn:aws-us-gov:iam::000000000001:role/a/b/Gov_Role+=,.@-1", Partition: "aws-us-gov", AccountID: "000000000001", Path: "/a/b/", Name: "Gov_Role+=,.@-1"}},
		{"arn:aws-cn:iam::999999999999:role/service-role/x",
			Role{Raw: "arn:aws-cn:iam::999999999999:role/service-role/x", Partition: "aws-cn", AccountID: "999999999999", Path: "/service-role/", Name: "x"}},
		{"arn:aws:iam::123456789012:role/" + strings.Repeat("n", 64),
			Role{Raw: "arn:aws:iam::123456789012:role/" + strings.Repeat("n", 64), Partition: "aws", AccountID: "123456789012", Path: "/", Name: strings.Repeat("n", 64)}},
	}
	for _, tc := range valid {
		t.Run("valid "+strings.TrimSpace(tc.in), func(t *testing.T) {
			got, err := ParseRole(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got.String() != tc.want.Raw {
				t.Errorf("String() = %q", got.String())
			}
		})
	}

	invalid := map[string]string{
		"empty":                    "",
		"blank":                    " \t\n",
		"not an arn":               "cloud-meter",
		"access key pasted":        "AKIAIOSFODNN7EXAMPLE",
		"no arn prefix":            "aws:iam::123456789012:role/x",
		"ARN uppercase":            "ARN:aws:iam::123456789012:role/x",
		"unknown partition":        "arn:aws-iso:iam::123456789012:role/x",
		"empty partition":          "arn::iam::123456789012:role/x",
		"not iam":                  "arn:aws:sts::123456789012:assumed-role/x/s",
		"region":                   "arn:aws:iam:us-east-1:123456789012:role/x",
		"11 digits":                "arn:aws:iam::12345678901:role/x",
		"13 digits":                "arn:aws:iam::1234567890123:role/x",
		"letters in account":       "arn:aws:iam::12345678901a:role/x",
		"unicode digits":           "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/x",
		"user":                     "arn:aws:iam::123456789012:user/x",
		"role without name":        "arn:aws:iam::123456789012:role/",
		"role only":                "arn:aws:iam::123456789012:role",
		"trailing slash":           "arn:aws:iam::123456789012:role/path/",
		"empty path segment":       "arn:aws:iam::123456789012:role/a//x",
		"leading slash":            "arn:aws:iam::123456789012:role//x",
		"name too long":            "arn:aws:iam::123456789012:role/" + strings.Repeat("n", 65),
		"space in name":            "arn:aws:iam::123456789012:role/cloud meter",
		"colon in name":            "arn:aws:iam::123456789012:role/x:y",
		"bad char in path":         "arn:aws:iam::123456789012:role/a*b/x",
		"inner newline":            "arn:aws:iam::123456789012:role/x\ny",
		"path too long":            "arn:aws:iam::123456789012:role/" + strings.Repeat("p/", 256) + "x",
		"far too long":             "arn:aws:iam::123456789012:role/" + strings.Repeat("a", 3000),
		"too few fields":           "arn:aws:iam:123456789012:role/x",
		"uppercase service":        "arn:aws:IAM::123456789012:role/x",
		"secret-looking paste tab": "arn:aws:iam::123456789012:role/x\twJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	}
	for name, in := range invalid {
		t.Run("invalid "+name, func(t *testing.T) {
			_, err := ParseRole(in)
			if err == nil {
				t.Fatal("accepted")
			}
			if failure.IsTransient(err) || failure.CodeOf(err) != status.CG1004 || failure.TargetOf(err) != "arn" {
				t.Errorf("classified %v", err)
			}
			if in = strings.TrimSpace(in); len(in) > 3 && strings.Contains(err.Error(), in) {
				t.Errorf("the error repeats the input: %v", err)
			}
		})
	}
}

// FuzzParseRoleARN checks the parser's invariants: an accepted ARN is
// rebuilt exactly from its parts and parses to itself again; a rejected one
// is a permanent CG1004.
func FuzzParseRoleARN(f *testing.F) {
	for _, seed := range []string{
		"arn:aws:iam::123456789012:role/cloud-meter",
		" arn:aws:iam::012345678901:role/leading-zero ",
		"arn:aws-us-gov:iam::000000000001:role/a/b/Gov_Role+=,.@-1",
		"arn:aws-cn:iam::999999999999:role/service-role/x",
		"arn:aws:iam::123456789012:role/a//x",
		"arn:aws:iam::123456789012:user/x",
		"arn:aws:iam:us-east-1:123456789012:role/x",
		"arn:aws:iam::12345678901:role/x",
		"arn:aws:iam::123456789012:role/x:y",
		"arn:aws:sts::123456789012:assumed-role/x/s",
		"",
		"\x00",
		"arn:aws:iam::123456789012:role/\u00e9",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseRole(in)
		if err != nil {
			if failure.IsTransient(err) || failure.CodeOf(err) != status.CG1004 {
				t.Fatalf("misclassified: %v", err)
			}
			return
		}
		if got.Raw != strings.TrimSpace(in) {
			t.Fatalf("Raw %q is not the trimmed input", got.Raw)
		}
		if rebuilt := "arn:" + got.Partition + ":iam::" + got.AccountID + ":role" + got.Path + got.Name; rebuilt != got.Raw {
			t.Fatalf("rebuilt %q from %+v", rebuilt, got)
		}
		if len(got.AccountID) != 12 || strings.Trim(got.AccountID, "0123456789") != "" {
			t.Fatalf("account id %q", got.AccountID)
		}
		if n := len(got.Name); n < 1 || n > 64 || strings.ContainsAny(got.Name, "/: \t\n") {
			t.Fatalf("name %q", got.Name)
		}
		if !strings.HasPrefix(got.Path, "/") || !strings.HasSuffix(got.Path, "/") || strings.Contains(got.Path, "//") {
			t.Fatalf("path %q", got.Path)
		}
		again, err := ParseRole(got.Raw)
		if err != nil || again != got {
			t.Fatalf("re-parse: %+v, %v", again, err)
		}
	})
}
