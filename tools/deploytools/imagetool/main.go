// Command imagetool makes the base image that ko builds Longlink's image on,
// and checks the image ko built, both without a Docker engine or a registry
// (go-containerregistry, the library under ko and crane).
//
//	imagetool base -kocache DIR        write the base image into ko's cache
//	                                   (an OCI layout); print its reference
//	imagetool check -layout DIR -rootfs DIR
//	                                   check the built image (non-root user,
//	                                   one executable, size) and unpack its
//	                                   file system into -rootfs
//
// The base is what a static Go binary needs and nothing else: /etc/passwd
// and /etc/group naming the non-root user 65532 ("nonroot"), its home,
// /tmp, and the CA bundle of the machine building it (public CAs for push
// providers and webhooks). Every file has a fixed time and owner, so the
// same inputs give the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonroot is the image's user.
const nonroot = 65532

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: imagetool base|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "base":
		fs := flag.NewFlagSet("base", flag.ExitOnError)
		cache := fs.String("kocache", "", "ko's cache directory (KOCACHE)")
		ca := fs.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include")
		fs.Parse(os.Args[2:])
		var ref string
		if ref, err = writeBase(*cache, *ca); err == nil {
			fmt.Println(ref)
		}
	case "check":
		fs := flag.NewFlagSet("check", flag.ExitOnError)
		dir := fs.String("layout", "", "OCI layout ko wrote (-oci-layout-path)")
		rootfs := fs.String("rootfs", "", "directory to unpack the image's file system into")
		maxMB := fs.Int("max-mb", 60, "largest compressed size accepted, MiB")
		fs.Parse(os.Args[2:])
		err = check(*dir, *rootfs, int64(*maxMB)<<20)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal("imagetool: ", err)
	}
}

func writeBase(cache, caFile string) (string, error) {
	if cache == "" {
		return "", errors.New("-kocache required")
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64, uid int) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid, ModTime: epoch})
	}
	file := func(name string, body []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch})
		tw.Write(body)
	}
	dir("etc/", 0o755, 0)
	file("etc/passwd", []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonroot, nonroot)))
	file("etc/group", []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonroot)))
	dir("etc/ssl/", 0o755, 0)
	dir("etc/ssl/certs/", 0o755, 0)
	file("etc/ssl/certs/ca-certificates.crt", ca)
	dir("home/", 0o755, 0)
	dir("home/nonroot/", 0o700, nonroot)
	dir("tmp/", 0o1777, 0)
	if err := tw.Close(); err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = fmt.Sprintf("%d:%d", nonroot, nonroot)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "HOME=/home/nonroot"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	path := filepath.Join(cache, "img")
	p, err := layout.FromPath(path)
	if err != nil {
		if p, err = layout.Write(path, empty.Index); err != nil {
			return "", err
		}
	}
	if err := p.AppendImage(img); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return "longlink.local/base@" + d.String(), nil
}

func check(dir, rootfs string, maxBytes int64) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) != 1 {
		return fmt.Errorf("%s: %d manifests, want the one image", dir, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if u := cf.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
		return fmt.Errorf("image runs as %q: want a non-root user", u)
	}
	if len(cf.Config.Entrypoint) != 1 {
		return fmt.Errorf("entrypoint %q: want the one binary", cf.Config.Entrypoint)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var size int64
	var executables []string
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return err
		}
		size += n
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			name := filepath.Clean("/" + h.Name)
			if h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0 {
				executables = append(executables, name)
			}
			if rootfs == "" {
				continue
			}
			dst := filepath.Join(rootfs, name)
			switch h.Typeflag {
			case tar.TypeDir:
				err = os.MkdirAll(dst, os.FileMode(h.Mode&0o7777)|0o700)
			case tar.TypeReg:
				os.MkdirAll(filepath.Dir(dst), 0o755)
				var f *os.File
				if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777)); err == nil {
					_, err = io.Copy(f, tr)
					f.Close()
				}
			case tar.TypeSymlink:
				err = os.Symlink(h.Linkname, dst)
			}
			if err != nil {
				return err
			}
		}
		rc.Close()
	}
	if len(executables) != 1 || executables[0] != cf.Config.Entrypoint[0] {
		return fmt.Errorf("executables %v: want only the entrypoint %s", executables, cf.Config.Entrypoint[0])
	}
	if size > maxBytes {
		return fmt.Errorf("image is %d MiB compressed: more than %d", size>>20, maxBytes>>20)
	}
	d, _ := img.Digest()
	fmt.Printf("imagetool: %s user=%s entrypoint=%s layers=%d compressed=%.1fMiB\n", d, cf.Config.User, cf.Config.Entrypoint[0], len(layers), float64(size)/(1<<20))
	return nil
}
