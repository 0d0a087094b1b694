module github.com/ehcheckpoints/boltstore

go 1.25.0
