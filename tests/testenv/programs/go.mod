module example.invalid/kodev-testenv-programs

go 1.26.0
