module kodev.dev/live

go 1.21
