package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Listen  string   `yaml:"listen"`
	Timeout Duration `yaml:"timeout"`
	Token   Secret   `yaml:"token"`
	Nested  struct {
		Size int `yaml:"size"`
	} `yaml:"nested"`
}

func (s *sample) Validate() error {
	var errs Errors
	if s.Listen == "" {
		errs.Addf("listen: must be set")
	}
	if s.Nested.Size < 0 {
		errs.Addf("nested.size: must not be negative")
	}
	return errs.Err()
}

func TestDecode(t *testing.T) {
	t.Setenv("LL_TEST_TOKEN", "from-env")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "tok")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, s *sample)
	}{
		{name: "defaults kept", yaml: "nested: {size: 3}\n", check: func(t *testing.T, s *sample) {
			if s.Listen != "127.0.0.1:1" || s.Nested.Size != 3 || s.Timeout.D() != time.Second {
				t.Fatalf("got %+v", s)
			}
		}},
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, s *sample) {
			if s.Listen != "127.0.0.1:1" {
				t.Fatalf("got %+v", s)
			}
		}},
		{name: "unknown key names file and line", yaml: "listen: x\nlisen: y\n", wantErr: "test.yaml:2:"},
		{name: "nested unknown key", yaml: "nested:\n  size: 1\n  sise: 2\n", wantErr: "test.yaml:3:"},
		{name: "duration", yaml: "timeout: 250ms\n", check: func(t *testing.T, s *sample) {
			if s.Timeout.D() != 250*time.Millisecond {
				t.Fatalf("timeout %v", s.Timeout.D())
			}
		}},
		{name: "bad duration", yaml: "timeout: soon\n", wantErr: "duration"},
		{name: "validation reports all problems", yaml: "listen: \"\"\nnested: {size: -1}\n", wantErr: "nested.size"},
		{name: "secret from env", yaml: "token: env:LL_TEST_TOKEN\n", check: func(t *testing.T, s *sample) {
			if s.Token.Reveal() != "from-env" {
				t.Fatalf("token %q", s.Token.Reveal())
			}
		}},
		{name: "secret from file", yaml: "token: file:" + secretFile + "\n", check: func(t *testing.T, s *sample) {
			if s.Token.Reveal() != "from-file" {
				t.Fatalf("token %q", s.Token.Reveal())
			}
		}},
		{name: "missing env secret", yaml: "token: env:LL_TEST_NOPE\n", wantErr: "LL_TEST_NOPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sample{Listen: "127.0.0.1:1", Timeout: Duration(time.Second)}
			err := Decode("test.yaml", []byte(tt.yaml), s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := &sample{Nested: struct {
		Size int `yaml:"size"`
	}{Size: -1}}
	err := s.Validate()
	if err == nil || !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), "nested.size") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := NewSecret("hunter2")
	for _, out := range []string{s.String(), s.LogValue().String()} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret leaked: %q", out)
		}
	}
	if v, _ := s.MarshalYAML(); v == "hunter2" {
		t.Fatal("secret leaked through YAML")
	}
}

func TestLoadMissingFile(t *testing.T) {
	err := Load(filepath.Join(t.TempDir(), "nope.yaml"), &sample{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// Errors name the key path and line, also where the message is about a
// value (a missing env secret, a duration without a unit), and every
// problem is reported at once.
func TestDecodeNamesKeys(t *testing.T) {
	type nested struct {
		Timeout Duration `yaml:"timeout"`
	}
	var c struct {
		Token  Secret `yaml:"token"`
		Nested nested `yaml:"nested"`
		Items  []struct {
			Key Secret `yaml:"key"`
		} `yaml:"items"`
	}
	doc := "token: env:LL_TEST_NOT_SET_ANYWHERE\nnested:\n  timeout: 5\nitems:\n  - key: file:/nonexistent/key\n"
	err := Decode("c.yaml", []byte(doc), &c)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"c.yaml:1: token: secret: environment variable LL_TEST_NOT_SET_ANYWHERE is not set",
		`c.yaml:3: nested.timeout: duration "5"`, "a duration needs a unit",
		"c.yaml:5: items[0].key: secret: open /nonexistent/key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// CheckFiles reports every missing file and unusable directory with its
// key path and line.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("x"), 0o600)
	doc := "tls:\n  cert_file: " + cert + "\n  key_file: " + dir + "/missing-key.pem\n" +
		"data_dir: " + dir + "/new\n" +
		"store:\n  data_dir: /nonexistent/deeper/data\n" +
		"geo:\n  city_db: " + dir + "\n"
	err := CheckFiles("c.yaml", []byte(doc))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"c.yaml:3: tls.key_file: open ", "c.yaml:6: store.data_dir: /nonexistent/deeper/data does not exist, nor does its parent",
		"c.yaml:8: geo.city_db: " + dir + " is a directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "cert_file") || strings.Contains(err.Error(), "c.yaml:4:") {
		t.Errorf("a good file or a creatable directory reported:\n%v", err)
	}
}
