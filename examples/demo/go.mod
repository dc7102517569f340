module example.com/kodev-demo

go 1.22
