package clustertest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver
)

// PGOptions shape a PostgreSQL deployment.
type PGOptions struct {
	// Site places the primary (nil: the environment's); StandbySite the
	// standby (nil: the primary's).
	Site, StandbySite *Site
	// Standby adds a streaming standby (pg_basebackup of the primary).
	Standby bool
	// Synchronous makes the standby synchronous (a commit waits for it:
	// no acked write is lost with the primary).
	Synchronous bool
	// NoFsync turns fsync off (tests that measure nothing about the disk).
	NoFsync bool
	// Settings are extra postgresql.conf lines.
	Settings []string
}

// Postgres is a running PostgreSQL deployment: a primary and maybe a
// standby, serving clients only on TLS with a password.
type Postgres struct {
	Primary, Standby *PGNode
	// User, Password and Database are the application's role and database.
	User, Password, Database string
	caFile                   string
}

// PGNode is one postgres server process.
type PGNode struct {
	*Proc
	Host     string
	Port     int
	DataDir  string
	Socket   string // the unix socket directory (superuser access)
	env      *Env
	postgres string // the server binary
}

// StartPostgres initialises a primary (initdb as the postgres user when
// running as root), starts it on its own port and, when asked, a standby.
func (e *Env) StartPostgres(o PGOptions) *Postgres {
	e.t.Helper()
	if o.Site == nil {
		o.Site = e.Site
	}
	if o.StandbySite == nil {
		o.StandbySite = o.Site
	}
	pg := &Postgres{User: "longlink", Database: "longlink", caFile: e.CAFile}
	dir := e.MkDir("pg-" + o.Site.Name)
	pg.Password, _ = e.Secret(dir, "password")
	replPassword, _ := e.Secret(dir, "repl-password")
	cred := pgCredential(e)
	chownAll(e, cred, dir)
	primary := e.newPGNode(o.Site, "pg-"+o.Site.Name+"-primary", filepath.Join(dir, "primary"), cred)
	// A copy of the initdb template (initdb takes seconds).
	if out, err := exec.Command("cp", "-a", e.Bins.PGTemplate, primary.DataDir).CombinedOutput(); err != nil {
		e.t.Fatalf("clustertest: copy the initdb template: %v\n%s", err, out)
	}
	// The server's certificate lives in the data directory (relative paths
	// in the configuration), so pg_basebackup copies it to the standby.
	cert, key := e.Cert(primary.DataDir, "server", o.Site.host(), o.StandbySite.host(), "localhost")
	if err := os.Rename(cert, filepath.Join(primary.DataDir, "server.crt")); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(key, filepath.Join(primary.DataDir, "server.key")); err != nil {
		e.t.Fatal(err)
	}
	conf := []string{
		"ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'",
		"max_connections = 400", "wal_level = replica", "max_wal_senders = 10", "hot_standby = on",
		"shared_buffers = 256MB", "log_min_messages = warning", "log_line_prefix = '%m [%p] %a '",
		"log_lock_waits = on", "deadlock_timeout = 200ms",
	}
	if o.NoFsync {
		conf = append(conf, "fsync = off", "synchronous_commit = off", "full_page_writes = off")
	}
	conf = append(conf, o.Settings...)
	appendFile(e, filepath.Join(primary.DataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n")
	hba := "local all all trust\n" +
		"hostssl all all 0.0.0.0/0 scram-sha-256\nhostssl all all ::/0 scram-sha-256\n" +
		"hostssl replication all 0.0.0.0/0 scram-sha-256\nhostssl replication all ::/0 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(primary.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		e.t.Fatal(err)
	}
	chownAll(e, cred, dir)
	if err := primary.Start(); err != nil {
		e.t.Fatal(err)
	}
	if err := primary.WaitReady(60 * time.Second); err != nil {
		e.t.Fatal(err)
	}
	if err := primary.Exec(
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pg.User, pg.Password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", pg.Database, pg.User),
		fmt.Sprintf("CREATE ROLE replicator REPLICATION LOGIN PASSWORD '%s'", replPassword),
	); err != nil {
		e.t.Fatal(err)
	}
	pg.Primary = primary
	if !o.Standby {
		return pg
	}
	standby := e.newPGNode(o.StandbySite, "pg-"+o.Site.Name+"-standby", filepath.Join(dir, "standby"), cred)
	args := []string{"-D", standby.DataDir, "-R", "-X", "stream", "-c", "fast",
		"-d", fmt.Sprintf("host=%s port=%d user=replicator sslmode=require application_name=standby", primary.Host, primary.Port)}
	bbBin, bbArgs, bbCred := asUserAt(o.StandbySite, cred, filepath.Join(e.Bins.PGBin, "pg_basebackup"), args)
	if x := o.StandbySite.Exec; len(x) > 0 {
		bbBin, bbArgs = x[0], append(append(append([]string(nil), x[1:]...), bbBin), bbArgs...)
	}
	if out, err := e.runAsEnv(bbCred, []string{"PGPASSWORD=" + replPassword, "HOME=" + dir}, bbBin, bbArgs...); err != nil {
		e.t.Fatalf("clustertest: pg_basebackup: %v\n%s", err, out)
	}
	if err := standby.Start(); err != nil {
		e.t.Fatal(err)
	}
	if err := standby.WaitReady(60 * time.Second); err != nil {
		e.t.Fatal(err)
	}
	pg.Standby = standby
	if o.Synchronous {
		// Once the standby streams (set before, the setup's own commits
		// would wait for it); only the primary has it, so a promoted
		// standby does not wait for a standby it does not have.
		if err := primary.Exec("ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()"); err != nil {
			e.t.Fatal(err)
		}
		err := poll(30*time.Second, func() error {
			st, err := primary.Scalar("SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
			if err == nil && st != "sync" {
				err = fmt.Errorf("standby's sync_state %q", st)
			}
			return err
		})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return pg
}

func (e *Env) newPGNode(site *Site, name, dataDir string, cred *syscall.Credential) *PGNode {
	host := site.host()
	n := &PGNode{Host: host, Port: e.Port(host), DataDir: dataDir, Socket: dataDir + "-sock", env: e,
		postgres: filepath.Join(e.Bins.PGBin, "postgres")}
	if err := os.MkdirAll(n.Socket, 0o755); err != nil {
		e.t.Fatal(err)
	}
	chownAll(e, cred, n.Socket)
	// Port, listen address and socket on the command line: a standby's
	// configuration is a copy of the primary's.
	bin, args, cred := asUserAt(site, cred, n.postgres, []string{"-D", dataDir, "-p", strconv.Itoa(n.Port), "-k", n.Socket,
		"-c", "listen_addresses=" + host})
	n.Proc = e.NewProc(site, name, bin, args...)
	n.Proc.cred = cred
	// Its own HOME: libpq (the standby's WAL receiver) looks for client
	// certificates in ~/.postgresql, which the test's HOME may hide.
	n.Proc.env = []string{"HOME=" + filepath.Dir(dataDir)}
	// SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, shared
	// memory released.
	n.Proc.stopSig = syscall.SIGQUIT
	n.Proc.engine = true
	return n
}

// DSN is the application's connection string: TLS with the server's
// certificate checked against the environment's CA, and the password.
// With a standby it lists both servers and asks for the writable one, so
// that nodes find a promoted standby by themselves; a server that does not
// answer (a cut site) is given up on after connect_timeout (2 s).
func (pg *Postgres) DSN() string {
	hosts := []string{fmt.Sprintf("%s:%d", pg.Primary.Host, pg.Primary.Port)}
	attrs := ""
	if pg.Standby != nil {
		hosts = append(hosts, fmt.Sprintf("%s:%d", pg.Standby.Host, pg.Standby.Port))
		attrs = "&target_session_attrs=read-write"
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=verify-full&connect_timeout=2&sslrootcert=%s%s",
		url.QueryEscape(pg.User), url.QueryEscape(pg.Password), strings.Join(hosts, ","), pg.Database, url.QueryEscape(pg.caFile), attrs)
}

// Open opens a database/sql pool on the application's database (for checks).
func (pg *Postgres) Open() (*sql.DB, error) { return sql.Open("pgx", pg.DSN()) }

// superDSN reaches the node as the superuser over its unix socket.
func (n *PGNode) superDSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", n.Socket, n.Port, db)
}

// WaitReady waits until the node accepts the superuser's connections.
func (n *PGNode) WaitReady(timeout time.Duration) error {
	err := poll(timeout, func() error {
		select {
		case <-n.Exited():
			return fmt.Errorf("%w: %v", errExited, n.ExitErr())
		default:
		}
		db, err := sql.Open("pgx", n.superDSN("postgres"))
		if err != nil {
			return err
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return db.PingContext(ctx)
	})
	if err != nil {
		return fmt.Errorf("clustertest: %s not ready: %w\n%s", n.Name, err, n.Tail(20))
	}
	return nil
}

// Exec runs statements as the superuser on the postgres database.
func (n *PGNode) Exec(stmts ...string) error {
	db, err := sql.Open("pgx", n.superDSN("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("clustertest: %s: %q: %w", n.Name, s, err)
		}
	}
	return nil
}

// Scalar runs a query as the superuser and returns its one value as text.
func (n *PGNode) Scalar(query string) (string, error) {
	db, err := sql.Open("pgx", n.superDSN("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var v sql.NullString
	if err := db.QueryRowContext(ctx, query).Scan(&v); err != nil {
		return "", fmt.Errorf("clustertest: %s: %q: %w", n.Name, query, err)
	}
	return v.String, nil
}

// Promote turns a standby into a primary and waits until it accepts writes.
func (n *PGNode) Promote() error {
	if err := n.Exec("SELECT pg_promote(true, 30)"); err != nil {
		return err
	}
	return poll(30*time.Second, func() error {
		db, err := sql.Open("pgx", n.superDSN("postgres"))
		if err != nil {
			return err
		}
		defer db.Close()
		var rec bool
		if err := db.QueryRow("SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if rec {
			return fmt.Errorf("%s still in recovery", n.Name)
		}
		return nil
	})
}

// pgCredential is the postgres user's when running as root (initdb and
// the server refuse root), else nil (run as the current user).
func pgCredential(e *Env) *syscall.Credential {
	cred, err := postgresUser()
	if err != nil {
		e.t.Fatal(err)
	}
	return cred
}

func postgresUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("clustertest: running as root needs the postgres user (the postgresql package creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgTemplate makes (once per machine and PostgreSQL version) the data
// directory every primary starts as a copy of.
func pgTemplate(cacheDir, pgBin string) (string, error) {
	dir := filepath.Join(cacheDir, "pg-template-"+filepath.Base(filepath.Dir(pgBin)))
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return dir, nil
	}
	cred, err := postgresUser()
	if err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return "", err
	}
	// initdb, as the postgres user, needs to reach the directory: it makes
	// it in a world-traversable place of its own.
	parent, err := os.MkdirTemp("", "longlink-initdb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(parent)
	if err := os.Chmod(parent, 0o777); err != nil {
		return "", err
	}
	data := filepath.Join(parent, "data")
	if out, err := runAs(cred, parent, []string{"HOME=" + parent}, filepath.Join(pgBin, "initdb"), "-D", data, "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return "", fmt.Errorf("clustertest: initdb: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-a", data, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("clustertest: copy initdb template: %v\n%s", err, out)
	}
	return dir, os.Rename(tmp, dir)
}

// asUserAt is the command that runs bin as cred at site: entering a
// site's namespace needs root, so the site's prefix runs as root and
// setpriv (which execs, keeping the pid) takes cred's identity in it. A
// change of identity clears the parent-death signal, so setpriv sets it
// again: the server dies with the test binary as every process does.
func asUserAt(site *Site, cred *syscall.Credential, bin string, args []string) (string, []string, *syscall.Credential) {
	if site == nil || len(site.Exec) == 0 || cred == nil {
		return bin, args, cred
	}
	return "setpriv", append([]string{fmt.Sprintf("--reuid=%d", cred.Uid), fmt.Sprintf("--regid=%d", cred.Gid), "--clear-groups",
		"--pdeathsig", "KILL", bin}, args...), nil
}

func (e *Env) runAsEnv(cred *syscall.Credential, env []string, bin string, args ...string) ([]byte, error) {
	return runAs(cred, e.Dir, env, bin, args...)
}

// runAs runs a command to its end (at most two minutes) as cred.
func runAs(cred *syscall.Credential, dir string, env []string, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		defer close(done)
		out, err = cmd.CombinedOutput()
	}()
	select {
	case <-done:
		return out, err
	case <-time.After(2 * time.Minute):
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-done
		return out, fmt.Errorf("%s timed out", bin)
	}
}

func chownAll(e *Env, cred *syscall.Credential, dir string) {
	if cred == nil {
		return
	}
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func appendFile(e *Env, path, text string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		e.t.Fatal(err)
	}
}
