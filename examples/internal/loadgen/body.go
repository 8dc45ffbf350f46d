package loadgen

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"mime/multipart"
)

// uploadBody builds a multipart upload for kind: a small PNG of random colour (a valid image
// that docapi's content sniffing accepts) and plausible, valid card fields.
func uploadBody(rnd *rand.Rand, kind string) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range cardFields(rnd, kind) {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("image", kind+".png")
	fw.Write(smallPNG(rnd))
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// smallPNG encodes a 16x16 image in two random colours.
func smallPNG(rnd *rand.Rand) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	a := color.RGBA{uint8(rnd.IntN(256)), uint8(rnd.IntN(256)), uint8(rnd.IntN(256)), 255}
	b := color.RGBA{255 - a.R, 255 - a.G, 255 - a.B, 255}
	for y := range 16 {
		for x := range 16 {
			if (x/4+y/4)%2 == 0 {
				img.Set(x, y, a)
			} else {
				img.Set(x, y, b)
			}
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

var (
	lastNames  = []string{"Alaoui", "Benali", "Chraibi", "El Idrissi", "Tazi", "Bennani"}
	firstNames = []string{"Amine", "Salma", "Youssef", "Khadija", "Omar", "Imane"}
	arabicLast = []string{"العلوي", "بنعلي", "الشرايبي", "الإدريسي", "التازي", "بناني"}
	cities     = []string{"Casablanca", "Rabat", "Fès", "Marrakech", "Tanger", "Agadir"}
)

// cardFields returns valid form values for a card of kind.
func cardFields(rnd *rand.Rand, kind string) map[string]string {
	i := rnd.IntN(len(lastNames))
	birth := fmt.Sprintf("19%02d-%02d-%02d", 50+rnd.IntN(50), 1+rnd.IntN(12), 1+rnd.IntN(28))
	switch kind {
	case "permis":
		return map[string]string{
			"numero_permis":   fmt.Sprintf("%02d/%06d", 1+rnd.IntN(99), rnd.IntN(1000000)),
			"nom_fr":          lastNames[i],
			"prenom_fr":       firstNames[rnd.IntN(len(firstNames))],
			"nom_ar":          arabicLast[i],
			"date_naissance":  birth,
			"lieu_naissance":  cities[rnd.IntN(len(cities))],
			"date_delivrance": "2020-03-15",
			"date_expiration": "2030-03-14",
			"categories":      "B",
		}
	case "cin":
		return map[string]string{
			"numero_cin":      fmt.Sprintf("BK%06d", rnd.IntN(1000000)),
			"nom_fr":          lastNames[i],
			"prenom_fr":       firstNames[rnd.IntN(len(firstNames))],
			"nom_ar":          arabicLast[i],
			"date_naissance":  birth,
			"sexe":            []string{"M", "F"}[rnd.IntN(2)],
			"date_expiration": "2031-06-30",
		}
	default: // gris
		return map[string]string{
			"numero_immatriculation":   fmt.Sprintf("%d-أ-%d", 10000+rnd.IntN(90000), 1+rnd.IntN(80)),
			"proprietaire":             firstNames[rnd.IntN(len(firstNames))] + " " + lastNames[i],
			"marque":                   "Dacia",
			"modele":                   "Logan",
			"carburant":                "diesel",
			"puissance_fiscale":        "6",
			"date_mise_en_circulation": "2019-05-02",
		}
	}
}
