package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
)

// The plot is drawn with the standard image packages and a tiny built-in
// 5×7 bitmap font (no new module): on the left the latency distribution
// at concurrency 1 (cumulative, log-scale milliseconds), on the right the
// throughput at the benchmark's concurrency.

var pathColors = map[string]color.RGBA{
	"direct": {0x1f, 0x77, 0xb4, 0xff},
	"invoke": {0xff, 0x7f, 0x0e, 0xff},
	"cli":    {0x2c, 0xa0, 0x2c, 0xff},
	"nginx":  {0xd6, 0x27, 0x28, 0xff},
}

type canvas struct{ img *image.RGBA }

func (c *canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.set(x, y, col)
		}
	}
}

// line draws a w-pixel-wide line (Bresenham with a square pen).
func (c *canvas) line(x0, y0, x1, y1, w int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		c.rect(x0-w/2, y0-w/2, x0-w/2+w, y0-w/2+w, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// text draws s at (x, y) (top-left), each font pixel scale×scale.
func (c *canvas) text(x, y int, s string, scale int, col color.RGBA) {
	for _, r := range strings.ToLower(s) {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for row, bits := range g {
			for colx, b := range bits {
				if b == '#' {
					c.rect(x+colx*scale, y+row*scale, x+(colx+1)*scale, y+(row+1)*scale, col)
				}
			}
		}
		x += 6 * scale
	}
}

func textWidth(s string, scale int) int { return len([]rune(s)) * 6 * scale }

func (s *summary) plot() ([]byte, error) {
	const W, H = 1180, 560
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, W, H))}
	white := color.RGBA{0xff, 0xff, 0xff, 0xff}
	black := color.RGBA{0x20, 0x20, 0x20, 0xff}
	grey := color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	c.rect(0, 0, W, H, white)
	c.text(20, 14, fmt.Sprintf("aivault benchmark, %s, %d cores (absolute numbers vary)", s.machine.date, s.machine.cores), 2, black)

	// Left: cumulative latency at concurrency 1, log x.
	px0, py0, px1, py1 := 80, 70, 700, 480
	lo, hi := math.Inf(1), 0.0
	for _, p := range s.paths {
		if len(p.c1) > 0 {
			lo = math.Min(lo, msf(p.c1[0]))
			hi = math.Max(hi, msf(p.c1[len(p.c1)-1]))
		}
	}
	if hi == 0 {
		lo, hi = 0.1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xOf := func(ms float64) int {
		return px0 + int((math.Log10(ms)-dlo)/(dhi-dlo)*float64(px1-px0))
	}
	yOf := func(f float64) int { return py1 - int(f*float64(py1-py0)) }
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > dhi+1e-9 {
				break
			}
			x := xOf(v)
			c.line(x, py0, x, py1, 1, grey)
			lbl := trimFloat(v)
			c.text(x-textWidth(lbl, 2)/2, py1+8, lbl, 2, black)
		}
	}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 0.9, 0.99, 1} {
		y := yOf(f)
		c.line(px0, y, px1, y, 1, grey)
		if f == 1 {
			continue // too close to 99 to label
		}
		lbl := fmt.Sprintf("%g", f*100)
		c.text(px0-8-textWidth(lbl, 2), y-7, lbl, 2, black)
	}
	c.line(px0, py1, px1, py1, 2, black)
	c.line(px0, py0, px0, py1, 2, black)
	c.text(px0, py1+30, "latency at concurrency 1, ms (log scale)", 2, black)
	c.text(px0, py0-22, "% of requests at or below", 2, black)
	for _, p := range s.paths {
		if len(p.c1) == 0 {
			continue
		}
		col := pathColors[p.name]
		n := float64(len(p.c1))
		lx, ly := xOf(msf(p.c1[0])), yOf(0)
		for i, d := range p.c1 {
			x, y := xOf(msf(d)), yOf(float64(i+1)/n)
			c.line(lx, ly, x, ly, 3, col)
			c.line(x, ly, x, y, 3, col)
			lx, ly = x, y
		}
	}
	// Legend.
	ly := py1 + 60
	lx := px0
	for _, p := range s.paths {
		col := pathColors[p.name]
		lbl := p.name
		if p.skip != "" {
			lbl += " (not measured)"
		} else {
			lbl += fmt.Sprintf(" p50 %s", trimFloat(round2(p.p(50))))
		}
		c.rect(lx, ly, lx+24, ly+14, col)
		c.text(lx+30, ly, lbl, 2, black)
		lx += 30 + textWidth(lbl, 2) + 30
	}

	// Right: throughput bars.
	bx0, by0, bx1, by1 := 760, 70, 1160, 480
	maxRPS := 1.0
	for _, p := range s.paths {
		maxRPS = math.Max(maxRPS, p.rps())
	}
	top := niceCeil(maxRPS)
	c.line(bx0, by1, bx1, by1, 2, black)
	c.line(bx0, by0, bx0, by1, 2, black)
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		y := by1 - int(f*float64(by1-by0))
		c.line(bx0, y, bx1, y, 1, grey)
	}
	c.text(bx0, by0-22, fmt.Sprintf("req/s at concurrency %d", s.conc), 2, black)
	bw := (bx1 - bx0) / max(len(s.paths), 1)
	for i, p := range s.paths {
		x := bx0 + i*bw + 8
		h := int(p.rps() / top * float64(by1-by0))
		c.rect(x, by1-h, x+bw-16, by1, pathColors[p.name])
		v := fmt.Sprintf("%.0f", p.rps())
		if p.skip != "" {
			v = "n/a"
		}
		c.text(x+(bw-16)/2-textWidth(v, 2)/2, by1-h-20, v, 2, black)
		c.text(x+(bw-16)/2-textWidth(p.name, 2)/2, by1+8, p.name, 2, black)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, c.img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// glyphs is a 5×7 bitmap font for the characters the plot uses (upper case
// is drawn as lower case).
var glyphs = map[rune][7]string{
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"####.", "....#", "....#", ".###.", "....#", "....#", "####."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'a': {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
	'b': {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."},
	'c': {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
	'd': {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"},
	'e': {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
	'f': {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
	'g': {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."},
	'h': {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'i': {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
	'j': {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."},
	'k': {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
	'l': {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'm': {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"},
	'n': {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'o': {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
	'p': {".....", ".....", "####.", "#...#", "####.", "#....", "#...."},
	'q': {".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"},
	'r': {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
	's': {".....", ".....", ".###.", "#....", ".###.", "....#", "####."},
	't': {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
	'u': {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
	'v': {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'w': {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
	'x': {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
	'y': {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."},
	'z': {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'%': {"##..#", "##.#.", "...#.", "..#..", ".#...", ".#.##", "#..##"},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'/': {"....#", "...#.", "...#.", "..#..", ".#...", ".#...", "#...."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'=': {".....", ".....", "#####", ".....", "#####", ".....", "....."},
	'+': {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."},
	'_': {".....", ".....", ".....", ".....", ".....", ".....", "#####"},
	'?': {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
}
